package org.patientcontracts.clients;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.File;
import java.io.IOException;

/**
 * HAPI FHIR's own Java clients against the service's {@code /fhir} endpoint, for the test suite.
 *
 * <pre>
 * java -jar hapi-clients.jar client INPUT.json     the generic client's interactions
 * java -jar hapi-clients.jar validate INPUT.json   FhirInstanceValidator on the answers given
 * </pre>
 *
 * <p>INPUT.json is written by the test (tests/fhir_service/api/fhir/test_hapi_client.py); the answer
 * is one JSON object on stdout, which the test asserts on. HAPI's logging goes to stderr.
 */
public final class HapiClients {
    static final ObjectMapper JSON = new ObjectMapper();

    private HapiClients() {}

    public static void main(String[] args) throws IOException {
        if (args.length != 2 || !(args[0].equals("client") || args[0].equals("validate"))) {
            System.err.println("usage: java -jar hapi-clients.jar client|validate INPUT.json");
            System.exit(2);
        }
        JsonNode input = JSON.readTree(new File(args[1]));
        ObjectNode answer =
                args[0].equals("client")
                        ? new GenericClientRun(input).run()
                        : new ValidatorRun(input).run();
        System.out.println(JSON.writeValueAsString(answer));
    }
}
