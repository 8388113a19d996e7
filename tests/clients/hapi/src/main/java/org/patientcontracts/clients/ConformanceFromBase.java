package org.patientcontracts.clients;

import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.context.support.IValidationSupport;
import ca.uhn.fhir.rest.client.api.IGenericClient;
import ca.uhn.fhir.rest.gclient.UriClientParam;
import com.fasterxml.jackson.databind.node.ArrayNode;
import org.hl7.fhir.instance.model.api.IBaseResource;
import org.hl7.fhir.r4.model.Bundle;
import org.hl7.fhir.r4.model.Bundle.BundleEntryComponent;
import org.hl7.fhir.r4.model.CodeSystem;
import org.hl7.fhir.r4.model.StructureDefinition;
import org.hl7.fhir.r4.model.ValueSet;

/**
 * The StructureDefinitions, ValueSets and CodeSystems the core package lacks, found by canonical
 * url on the endpoint's base ({@code [base]/StructureDefinition?url=...}), as any validator given
 * only our base would find them. No token: our conformance resources are public. The chain this
 * sits in caches each answer, so each canonical is asked for once.
 */
final class ConformanceFromBase implements IValidationSupport {
    private final FhirContext context;
    private final IGenericClient client;
    private final ArrayNode asked = HapiClients.JSON.createArrayNode();

    ConformanceFromBase(FhirContext context, String base) {
        this.context = context;
        this.client = context.newRestfulGenericClient(base);
    }

    /** Every canonical asked for, with whether the base had it. */
    ArrayNode asked() {
        return asked;
    }

    @Override
    public FhirContext getFhirContext() {
        return context;
    }

    @Override
    public String getName() {
        return "the endpoint's conformance resources";
    }

    @Override
    public IBaseResource fetchStructureDefinition(String url) {
        return byUrl(StructureDefinition.class, url);
    }

    @Override
    public IBaseResource fetchValueSet(String url) {
        return byUrl(ValueSet.class, url);
    }

    @Override
    public IBaseResource fetchCodeSystem(String url) {
        return byUrl(CodeSystem.class, url);
    }

    private <T extends IBaseResource> T byUrl(Class<T> type, String url) {
        Bundle found =
                client.search()
                        .forResource(type)
                        .where(new UriClientParam("url").matches().value(url))
                        .returnBundle(Bundle.class)
                        .execute();
        T match =
                found.getEntry().stream()
                        .map(BundleEntryComponent::getResource)
                        .filter(type::isInstance)
                        .map(type::cast)
                        .findFirst()
                        .orElse(null);
        asked.addObject()
                .put("type", type.getSimpleName())
                .put("url", url)
                .put("found", match != null);
        return match;
    }
}
