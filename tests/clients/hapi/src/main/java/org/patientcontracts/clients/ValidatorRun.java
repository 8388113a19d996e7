package org.patientcontracts.clients;

import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.context.support.DefaultProfileValidationSupport;
import ca.uhn.fhir.validation.FhirValidator;
import ca.uhn.fhir.validation.SingleValidationMessage;
import ca.uhn.fhir.validation.ValidationResult;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.hl7.fhir.common.hapi.validation.support.CommonCodeSystemsTerminologyService;
import org.hl7.fhir.common.hapi.validation.support.InMemoryTerminologyServerValidationSupport;
import org.hl7.fhir.common.hapi.validation.support.SnapshotGeneratingValidationSupport;
import org.hl7.fhir.common.hapi.validation.support.ValidationSupportChain;
import org.hl7.fhir.common.hapi.validation.validator.FhirInstanceValidator;

/**
 * FhirInstanceValidator on each answer the test read from the endpoint, as its JSON came over the
 * wire. What it knows: the core R4 package, the common code systems, and whatever canonical our
 * base resolves ({@link ConformanceFromBase}). Snapshots of our profiles, which are published as
 * differentials, are generated here. Each issue names the resource it is in.
 */
final class ValidatorRun {
    private static final Pattern ENTRY = Pattern.compile("^Bundle\\.entry\\[(\\d+)]");

    private final JsonNode input;

    ValidatorRun(JsonNode input) {
        this.input = input;
    }

    ObjectNode run() throws JsonProcessingException {
        FhirContext context = FhirContext.forR4();
        ConformanceFromBase ours = new ConformanceFromBase(context, input.path("base").asText());
        // The chain caches what each member answers (CachingValidationSupport is deprecated
        // since HAPI 8.0 for that reason).
        ValidationSupportChain chain =
                new ValidationSupportChain(
                        new DefaultProfileValidationSupport(context),
                        ours,
                        new CommonCodeSystemsTerminologyService(context),
                        new InMemoryTerminologyServerValidationSupport(context),
                        new SnapshotGeneratingValidationSupport(context));
        FhirValidator validator = context.newValidator();
        validator.registerValidatorModule(new FhirInstanceValidator(chain));

        ObjectNode answer = HapiClients.JSON.createObjectNode();
        ArrayNode results = answer.putArray("results");
        for (JsonNode given : input.path("answers")) {
            JsonNode resource = given.path("resource");
            ValidationResult result =
                    validator.validateWithResult(HapiClients.JSON.writeValueAsString(resource));
            ObjectNode validated = results.addObject();
            validated.put("answer", given.path("name").asText());
            ArrayNode issues = validated.putArray("issues");
            for (SingleValidationMessage message : result.getMessages()) {
                issues.addObject()
                        .put("severity", message.getSeverity().getCode())
                        .put("resource", named(resource, message.getLocationString()))
                        .put("location", message.getLocationString())
                        .put("message", message.getMessage());
            }
        }
        answer.set("fetched", ours.asked());
        return answer;
    }

    /** The resource an issue is in: a Bundle's entry when the location is inside one. */
    private static String named(JsonNode resource, String location) {
        Matcher entry = ENTRY.matcher(location == null ? "" : location);
        JsonNode named = resource;
        if (entry.find()) {
            named = resource.path("entry").path(Integer.parseInt(entry.group(1))).path("resource");
        }
        return named.path("resourceType").asText() + "/" + named.path("id").asText();
    }
}
