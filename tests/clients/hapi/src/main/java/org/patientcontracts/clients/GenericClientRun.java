package org.patientcontracts.clients;

import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.rest.api.MethodOutcome;
import ca.uhn.fhir.rest.api.SearchTotalModeEnum;
import ca.uhn.fhir.rest.api.SummaryEnum;
import ca.uhn.fhir.rest.client.api.IGenericClient;
import ca.uhn.fhir.rest.client.interceptor.BearerTokenAuthInterceptor;
import ca.uhn.fhir.rest.gclient.ICriterion;
import ca.uhn.fhir.rest.gclient.TokenClientParam;
import ca.uhn.fhir.rest.server.exceptions.BaseServerResponseException;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import org.hl7.fhir.instance.model.api.IBaseBundle;
import org.hl7.fhir.instance.model.api.IBaseResource;
import org.hl7.fhir.r4.model.Appointment;
import org.hl7.fhir.r4.model.Bundle;
import org.hl7.fhir.r4.model.Bundle.BundleEntryComponent;
import org.hl7.fhir.r4.model.Bundle.SearchEntryMode;
import org.hl7.fhir.r4.model.CarePlan;
import org.hl7.fhir.r4.model.CodeableConcept;
import org.hl7.fhir.r4.model.Coding;
import org.hl7.fhir.r4.model.DateTimeType;
import org.hl7.fhir.r4.model.Goal;
import org.hl7.fhir.r4.model.IdType;
import org.hl7.fhir.r4.model.Identifier;
import org.hl7.fhir.r4.model.Parameters;
import org.hl7.fhir.r4.model.Provenance;
import org.hl7.fhir.r4.model.Reference;
import org.hl7.fhir.r4.model.Resource;
import org.hl7.fhir.r4.model.StringType;

/**
 * The generic client's interactions with the endpoint, in the order an EHR would make them. Each
 * step's answer is what the client's own objects say (ids, versions, MethodOutcome, titles, tags,
 * totals) plus the exchanges on the wire; a step the endpoint refuses answers {@code error} with
 * the status, and the steps after it still run.
 */
final class GenericClientRun {
    /** Far more pages than the contracts hold: a paging loop that never ends is a failure. */
    private static final int MOST_PAGES = 50;

    private final FhirContext context = FhirContext.forR4();
    private final Exchanges exchanges = new Exchanges();
    private final ObjectNode answer = HapiClients.JSON.createObjectNode();
    private final JsonNode input;
    private final IGenericClient ehr;
    private final IGenericClient auditor;
    private final IGenericClient booking;
    private final String contract;
    private final String contractSystem;
    private final String goalSystem;
    /** The contract's CarePlan as the search found it, and as read. */
    private CarePlan found;
    private CarePlan read;

    GenericClientRun(JsonNode input) {
        this.input = input;
        // The service takes a few seconds for a contract's transaction; HAPI's default is 10 s.
        context.getRestfulClientFactory().setSocketTimeout(120_000);
        ehr = client("ehr");
        auditor = client("auditor");
        booking = client("booking");
        contract = input.path("contract").asText();
        contractSystem = input.path("systems").path("contract").asText();
        goalSystem = input.path("systems").path("goal").asText();
    }

    private IGenericClient client(String role) {
        // As a Java EHR sets it up: HAPI's defaults (JSON bodies, both formats accepted).
        IGenericClient client = context.newRestfulGenericClient(input.path("base").asText());
        String token = input.path("tokens").path(role).asText();
        client.registerInterceptor(new BearerTokenAuthInterceptor(token));
        client.registerInterceptor(exchanges);
        return client;
    }

    ObjectNode run() {
        step("search", this::search);
        step("read", this::read);
        step("vread", this::vread);
        step("history", this::history);
        step("paging", this::paging);
        step("elements", this::elements);
        step("summary", this::summary);
        step("readElements", this::readElements);
        step("update", this::update);
        step("updateVersioned", this::updateVersioned);
        step("updateStale", this::updateStale);
        step("create", this::create);
        step("conditionalCreate", this::conditionalCreate);
        step("transaction", this::transaction);
        step("coherentPlanGet", () -> coherentPlan(true));
        step("coherentPlanPost", () -> coherentPlan(false));
        step("findGet", () -> find(true));
        step("findPost", () -> find(false));
        step("count", this::count);
        step("total", this::total);
        step("countByUnit", this::countByUnit);
        return answer;
    }

    private interface Step {
        ObjectNode run() throws JsonProcessingException;
    }

    private void step(String name, Step step) {
        exchanges.clear();
        ObjectNode result;
        try {
            result = step.run();
        } catch (BaseServerResponseException e) {
            result = failure(e).put("status", e.getStatusCode());
        } catch (RuntimeException | JsonProcessingException e) {
            result = failure(e);
        }
        result.set("exchanges", exchanges.seen());
        answer.set(name, result);
    }

    private static ObjectNode failure(Exception e) {
        ObjectNode result = HapiClients.JSON.createObjectNode();
        result.putObject("error")
                .put("type", e.getClass().getSimpleName())
                .put("message", String.valueOf(e.getMessage()));
        return result;
    }

    private ICriterion<TokenClientParam> isTheContract() {
        return CarePlan.IDENTIFIER.exactly().systemAndCode(contractSystem, contract);
    }

    private CarePlan found() {
        if (found == null) {
            throw new IllegalStateException("the search found no CarePlan of the contract");
        }
        return found;
    }

    private CarePlan current() {
        if (read == null) {
            throw new IllegalStateException("the CarePlan was not read");
        }
        return read;
    }

    private ObjectNode search() {
        Bundle bundle =
                ehr.search()
                        .forResource(CarePlan.class)
                        .where(isTheContract())
                        .include(CarePlan.INCLUDE_GOAL)
                        .returnBundle(Bundle.class)
                        .execute();
        ObjectNode result = entries(bundle);
        for (BundleEntryComponent entry : bundle.getEntry()) {
            if (entry.getResource() instanceof CarePlan plan
                    && entry.getSearch().getMode() == SearchEntryMode.MATCH) {
                found = plan;
            }
        }
        return result;
    }

    private ObjectNode read() {
        read =
                ehr.read()
                        .resource(CarePlan.class)
                        .withId(found().getIdElement().getIdPart())
                        .execute();
        return carePlan(read).put("subject", read.getSubject().getReference());
    }

    private ObjectNode vread() {
        IdType id = current().getIdElement();
        CarePlan version =
                ehr.read()
                        .resource(CarePlan.class)
                        .withIdAndVersion(id.getIdPart(), id.getVersionIdPart())
                        .execute();
        return carePlan(version);
    }

    private ObjectNode history() {
        Bundle bundle =
                ehr.history()
                        .onInstance(current().getIdElement().toUnqualifiedVersionless())
                        .returnBundle(Bundle.class)
                        .execute();
        ObjectNode result = HapiClients.JSON.createObjectNode();
        ArrayNode versions = result.putArray("versions");
        for (BundleEntryComponent entry : bundle.getEntry()) {
            versions.add(entry.getResource().getIdElement().getVersionIdPart());
        }
        return result;
    }

    /** The patient's Goals one a page, following every next link to the end. */
    private ObjectNode paging() {
        Bundle page =
                ehr.search()
                        .forResource(Goal.class)
                        .where(Goal.PATIENT.hasId(current().getSubject().getReference()))
                        .count(1)
                        .returnBundle(Bundle.class)
                        .execute();
        ObjectNode result = HapiClients.JSON.createObjectNode();
        ArrayNode ids = result.putArray("ids");
        ArrayNode links = result.putArray("next");
        int pages = 1;
        addIds(ids, page);
        while (page.getLink(IBaseBundle.LINK_NEXT) != null && pages < MOST_PAGES) {
            links.add(page.getLink(IBaseBundle.LINK_NEXT).getUrl());
            page = ehr.loadPage().next(page).execute();
            pages++;
            addIds(ids, page);
        }
        return result.put("pages", pages).put("ended", page.getLink(IBaseBundle.LINK_NEXT) == null);
    }

    private static void addIds(ArrayNode ids, Bundle page) {
        for (BundleEntryComponent entry : page.getEntry()) {
            ids.add(entry.getResource().getIdElement().toUnqualifiedVersionless().getValue());
        }
    }

    private ObjectNode elements() {
        Bundle bundle =
                ehr.search()
                        .forResource(CarePlan.class)
                        .where(isTheContract())
                        .elementsSubset("title")
                        .returnBundle(Bundle.class)
                        .execute();
        return carePlan((CarePlan) bundle.getEntryFirstRep().getResource());
    }

    private ObjectNode summary() {
        Bundle bundle =
                ehr.search()
                        .forResource(CarePlan.class)
                        .where(isTheContract())
                        .summaryMode(SummaryEnum.TRUE)
                        .returnBundle(Bundle.class)
                        .execute();
        return carePlan((CarePlan) bundle.getEntryFirstRep().getResource());
    }

    private ObjectNode readElements() {
        CarePlan plan =
                ehr.read()
                        .resource(CarePlan.class)
                        .withId(found().getIdElement().getIdPart())
                        .elementsSubset("title")
                        .execute();
        return carePlan(plan);
    }

    private Goal goal(String key) {
        Bundle bundle =
                ehr.search()
                        .forResource(Goal.class)
                        .where(Goal.IDENTIFIER.exactly().systemAndCode(goalSystem, contract + "/" + key))
                        .returnBundle(Bundle.class)
                        .execute();
        if (bundle.getEntry().size() != 1) {
            throw new IllegalStateException(
                    "Goal " + key + " found " + bundle.getEntry().size() + " times");
        }
        return (Goal) bundle.getEntryFirstRep().getResource();
    }

    /** As an EHR saves what it read: PUT to the id without a version, so no If-Match. */
    private ObjectNode update() {
        Goal goal = goal(input.path("goalKey").asText());
        String before = goal.getIdElement().getVersionIdPart();
        goal.setDescription(new CodeableConcept().setText(input.path("descriptions").path(0).asText()));
        MethodOutcome outcome =
                ehr.update().resource(goal).withId(goal.getIdElement().toUnqualifiedVersionless()).execute();
        return written(outcome).put("before", before);
    }

    /** The update of the version read: the client sends it as If-Match. */
    private ObjectNode updateVersioned() {
        Goal goal = goal(input.path("goalKey").asText());
        IdType versioned = goal.getIdElement().toUnqualified();
        goal.setDescription(new CodeableConcept().setText(input.path("descriptions").path(1).asText()));
        MethodOutcome outcome = ehr.update().resource(goal).withId(versioned).execute();
        return written(outcome).put("asked", versioned.getValue());
    }

    /** An update of a version no longer current: refused, whatever it says. */
    private ObjectNode updateStale() {
        Goal goal = goal(input.path("goalKey").asText());
        IdType current = goal.getIdElement().toUnqualified();
        IdType stale = current.withVersion(Long.toString(current.getVersionIdPartAsLong() - 1));
        goal.setDescription(new CodeableConcept().setText("stale"));
        MethodOutcome outcome = ehr.update().resource(goal).withId(stale).execute();
        return written(outcome).put("asked", stale.getValue());
    }

    private ObjectNode create() throws JsonProcessingException {
        Goal goal = parse("goal", Goal.class);
        goal.setSubject(current().getSubject());
        return written(ehr.create().resource(goal).execute());
    }

    /** The same conditional create twice: the second finds the first's Goal. */
    private ObjectNode conditionalCreate() throws JsonProcessingException {
        ObjectNode result = HapiClients.JSON.createObjectNode();
        for (String attempt : new String[] {"first", "second"}) {
            Goal goal = parse("conditionalGoal", Goal.class);
            goal.setSubject(current().getSubject());
            Identifier identifier = goal.getIdentifierFirstRep();
            String condition =
                    "Goal?identifier=" + identifier.getSystem() + "|" + identifier.getValue();
            MethodOutcome outcome =
                    ehr.create().resource(goal).conditionalByUrl(condition).execute();
            result.set(attempt, written(outcome));
        }
        return result;
    }

    private ObjectNode transaction() throws JsonProcessingException {
        Bundle sent = parse("transaction", Bundle.class);
        Bundle response = ehr.transaction().withBundle(sent).execute();
        ObjectNode result = HapiClients.JSON.createObjectNode();
        result.put("type", response.getType() == null ? null : response.getType().toCode());
        ArrayNode entries = result.putArray("entries");
        for (int i = 0; i < response.getEntry().size(); i++) {
            Bundle.BundleEntryResponseComponent answered = response.getEntry().get(i).getResponse();
            ObjectNode entry = entries.addObject();
            entry.put("status", answered.getStatus())
                    .put("location", answered.getLocation())
                    .put("etag", answered.getEtag());
            if (i < sent.getEntry().size()) {
                entry.put("sent", sent.getEntry().get(i).getResource().fhirType());
            }
        }
        // What a client does next with the answer: read the plan where the answer says it is.
        for (BundleEntryComponent entry : response.getEntry()) {
            String location = entry.getResponse().getLocation();
            if (location != null && new IdType(location).getResourceType().equals("CarePlan")) {
                CarePlan plan =
                        ehr.read()
                                .resource(CarePlan.class)
                                .withId(new IdType(location).getIdPart())
                                .execute();
                result.set("carePlan", carePlan(plan));
            }
        }
        return result;
    }

    private ObjectNode coherentPlan(boolean byGet) {
        Parameters parameters = new Parameters();
        parameters.addParameter().setName("patient").setValue(new StringType(input.path("patient").asText()));
        var operation =
                ehr.operation()
                        .onType(CarePlan.class)
                        .named("$coherent-plan")
                        .withParameters(parameters);
        Bundle bundle =
                (byGet ? operation.useHttpGet() : operation).returnResourceType(Bundle.class).execute();
        return entries(bundle);
    }

    private ObjectNode find(boolean byGet) {
        JsonNode asked = input.path("find");
        Parameters parameters = new Parameters();
        parameters.addParameter().setName("start").setValue(new DateTimeType(asked.path("start").asText()));
        parameters.addParameter().setName("end").setValue(new DateTimeType(asked.path("end").asText()));
        parameters.addParameter()
                .setName("organization")
                .setValue(new StringType(asked.path("organization").asText()));
        parameters.addParameter()
                .setName("visit-type")
                .setValue(new StringType(asked.path("visit-type").asText()));
        var operation =
                booking.operation()
                        .onType(Appointment.class)
                        .named("$find")
                        .withParameters(parameters);
        Bundle bundle =
                (byGet ? operation.useHttpGet() : operation).returnResourceType(Bundle.class).execute();
        ObjectNode result = HapiClients.JSON.createObjectNode();
        ArrayNode appointments = result.putArray("appointments");
        for (BundleEntryComponent entry : bundle.getEntry()) {
            Appointment appointment = (Appointment) entry.getResource();
            ObjectNode shown = appointments.addObject();
            shown.put("status", appointment.getStatus().toCode())
                    .put("start", appointment.getStartElement().getValueAsString());
            ArrayNode slots = shown.putArray("slots");
            for (Reference slot : appointment.getSlot()) {
                slots.add(slot.getReference());
            }
        }
        return result;
    }

    private TokenClientParam targetIdentifier() {
        return new TokenClientParam("target-identifier");
    }

    /** An auditor counts the contract's changes without reading them: _summary=count. */
    private ObjectNode count() {
        Bundle bundle =
                auditor.search()
                        .forResource(Provenance.class)
                        .where(targetIdentifier().exactly().systemAndCode(contractSystem, contract))
                        .summaryMode(SummaryEnum.COUNT)
                        .returnBundle(Bundle.class)
                        .execute();
        return totalled(bundle);
    }

    /** The same, reading them with _total=accurate. */
    private ObjectNode total() {
        Bundle bundle =
                auditor.search()
                        .forResource(Provenance.class)
                        .where(targetIdentifier().exactly().systemAndCode(contractSystem, contract))
                        .totalMode(SearchTotalModeEnum.ACCURATE)
                        .returnBundle(Bundle.class)
                        .execute();
        return totalled(bundle);
    }

    /** A care unit counts its own CarePlans (the endpoint asks HAPI for the unit's only). */
    private ObjectNode countByUnit() {
        Bundle bundle =
                ehr.search()
                        .forResource(CarePlan.class)
                        .where(isTheContract())
                        .summaryMode(SummaryEnum.COUNT)
                        .returnBundle(Bundle.class)
                        .execute();
        return totalled(bundle);
    }

    private static ObjectNode totalled(Bundle bundle) {
        ObjectNode result = HapiClients.JSON.createObjectNode();
        if (bundle.hasTotal()) {
            result.put("total", bundle.getTotal());
        }
        return result.put("entries", bundle.getEntry().size());
    }

    private <T extends IBaseResource> T parse(String field, Class<T> type)
            throws JsonProcessingException {
        String json = HapiClients.JSON.writeValueAsString(input.path(field));
        return context.newJsonParser().parseResource(type, json);
    }

    /** A MethodOutcome as the client hands it over, and the resource it carries. */
    private static ObjectNode written(MethodOutcome outcome) {
        ObjectNode result = HapiClients.JSON.createObjectNode();
        IdType id = outcome.getId() == null ? null : new IdType(outcome.getId().getValue());
        result.put("id", id == null ? null : id.getValue())
                .put("idPart", id == null ? null : id.getIdPart())
                .put("version", id == null ? null : id.getVersionIdPart())
                .put("created", outcome.getCreated());
        if (outcome.getResource() instanceof Goal goal) {
            result.put("description", goal.getDescription().getText());
        }
        return result;
    }

    private static ObjectNode carePlan(CarePlan plan) {
        ObjectNode result = HapiClients.JSON.createObjectNode();
        result.put("id", plan.getIdElement().getIdPart())
                .put("version", plan.getIdElement().getVersionIdPart())
                .put("title", plan.getTitle())
                .put("status", plan.hasStatus() ? plan.getStatus().toCode() : null)
                .put("text", plan.hasText())
                .put("activities", plan.getActivity().size())
                .put("goals", plan.getGoal().size());
        ArrayNode tags = result.putArray("tags");
        for (Coding tag : plan.getMeta().getTag()) {
            tags.add(tag.getSystem() + "|" + tag.getCode());
        }
        return result;
    }

    /** A searchset as the client reads it: total, matches (CarePlans with their title and
     * contract), what was included, and any OperationOutcome entry. */
    private ObjectNode entries(Bundle bundle) {
        ObjectNode result = HapiClients.JSON.createObjectNode();
        if (bundle.hasTotal()) {
            result.put("total", bundle.getTotal());
        }
        ArrayNode matches = result.putArray("matches");
        ArrayNode included = result.putArray("included");
        ArrayNode outcomes = result.putArray("outcomes");
        for (BundleEntryComponent entry : bundle.getEntry()) {
            Resource resource = entry.getResource();
            SearchEntryMode mode = entry.getSearch().getMode();
            if (mode == SearchEntryMode.OUTCOME) {
                outcomes.add(resource.fhirType());
            } else if (mode == SearchEntryMode.INCLUDE) {
                included.add(resource.fhirType() + "/" + resource.getIdElement().getIdPart());
            } else if (resource instanceof CarePlan plan) {
                ObjectNode match = carePlan(plan);
                for (Identifier identifier : plan.getIdentifier()) {
                    if (contractSystem.equals(identifier.getSystem())) {
                        match.put("contract", identifier.getValue());
                    }
                }
                matches.add(match);
            } else {
                matches.addObject().put("id", resource.getIdElement().getIdPart());
            }
        }
        return result;
    }
}
