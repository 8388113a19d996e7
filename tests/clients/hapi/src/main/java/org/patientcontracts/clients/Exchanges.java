package org.patientcontracts.clients;

import ca.uhn.fhir.rest.client.api.IClientInterceptor;
import ca.uhn.fhir.rest.client.api.IHttpRequest;
import ca.uhn.fhir.rest.client.api.IHttpResponse;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.util.List;
import java.util.Map;

/**
 * What the client sent and got on the wire, per step: the method, the URL, the headers that decide
 * what a write does (If-Match, If-None-Exist) and the answer's status and Location. The client's
 * own objects hide these, and they are what the endpoint is tested on.
 */
final class Exchanges implements IClientInterceptor {
    private ArrayNode seen = HapiClients.JSON.createArrayNode();
    private ObjectNode current;

    /** Start a new step's record. */
    void clear() {
        seen = HapiClients.JSON.createArrayNode();
        current = null;
    }

    ArrayNode seen() {
        return seen;
    }

    @Override
    public void interceptRequest(IHttpRequest request) {
        current = seen.addObject();
        current.put("method", request.getHttpVerbName()).put("url", request.getUri());
        Map<String, List<String>> headers = request.getAllHeaders();
        for (String name : List.of("If-Match", "If-None-Exist")) {
            List<String> values = headers.get(name);
            if (values != null && !values.isEmpty()) {
                current.put(name, values.get(0));
            }
        }
    }

    @Override
    public void interceptResponse(IHttpResponse response) {
        if (current == null) {
            return;
        }
        current.put("status", response.getStatus());
        List<String> location = response.getHeaders("Location");
        if (location != null && !location.isEmpty()) {
            current.put("Location", location.get(0));
        }
    }
}
