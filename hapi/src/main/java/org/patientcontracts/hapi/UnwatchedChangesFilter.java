package org.patientcontracts.hapi;

import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.interceptor.api.Hook;
import ca.uhn.fhir.interceptor.api.Interceptor;
import ca.uhn.fhir.interceptor.api.Pointcut;
import ca.uhn.fhir.jpa.subscription.match.matcher.subscriber.SubscriptionCriteriaParser.SubscriptionCriteria;
import ca.uhn.fhir.jpa.subscription.match.matcher.subscriber.SubscriptionCriteriaParser.TypeEnum;
import ca.uhn.fhir.jpa.subscription.match.registry.ActiveSubscription;
import ca.uhn.fhir.jpa.subscription.model.CanonicalSubscription;
import ca.uhn.fhir.jpa.subscription.model.ResourceModifiedMessage;
import java.util.Collection;
import java.util.Set;
import java.util.function.Supplier;
import org.slf4j.LoggerFactory;

/**
 * Keeps changes to resources no active Subscription can match out of HAPI's subscription pipeline.
 *
 * <p>HAPI 8.8 queues every change to every resource for its subscription matcher: it stores a
 * message row in the transaction that writes the resource, and afterwards a scheduler reads the
 * row and the resource back, matches the resource against each active Subscription and deletes
 * the row. The service's Subscriptions name four types (CarePlan, CareTeam, Appointment,
 * HealthcareService), while most of what it writes is AuditEvents, one for every request, and
 * Provenance: each of those went down the whole pipeline to match nothing. Changes of a type that
 * no active Subscription names now stop at {@link Pointcut#SUBSCRIPTION_RESOURCE_MODIFIED}, the
 * hook HAPI offers for that decision.
 *
 * <p>Nothing a Subscription could match is dropped: a change of a type some Subscription names
 * goes on as before, as does every change while any Subscription matches more than named types
 * (a wildcard, a topic, criteria HAPI cannot parse), and every change to a Subscription itself,
 * which is how HAPI activates them. The one difference is timing: HAPI matches a change against
 * the Subscriptions active when its scheduler gets to it, this filter asks when the change is
 * written, so a change made in the moment between a Subscription's creation and its activation
 * may miss it, as HAPI does not promise either way.
 */
@Interceptor
public class UnwatchedChangesFilter {

	/** Changes HAPI itself needs in the pipeline: they make and end Subscriptions. */
	private static final Set<String> ALWAYS = Set.of("Subscription", "SubscriptionTopic");

	private final FhirContext context;
	private final Supplier<Collection<ActiveSubscription>> active;

	public UnwatchedChangesFilter(FhirContext context, Supplier<Collection<ActiveSubscription>> active) {
		this.context = context;
		this.active = active;
	}

	/** Said once HAPI's interceptor service has taken the filter: an operator (and a test) sees it is on. */
	@Hook(Pointcut.INTERCEPTOR_REGISTERED)
	public void registered() {
		LoggerFactory.getLogger(UnwatchedChangesFilter.class)
				.info("Subscriptions: changes to resource types no active Subscription names are not queued for matching");
	}

	/** Whether HAPI queues the change for its subscription matcher. */
	@Hook(Pointcut.SUBSCRIPTION_RESOURCE_MODIFIED)
	public boolean resourceModified(ResourceModifiedMessage message) {
		String type = message.getResourceType(context);
		return type == null || ALWAYS.contains(type) || watched(type, active.get());
	}

	/** Whether any of {@code subscriptions} could match a resource of {@code type}. */
	private static boolean watched(String type, Collection<ActiveSubscription> subscriptions) {
		for (ActiveSubscription subscription : subscriptions) {
			CanonicalSubscription canonical = subscription.getSubscription();
			SubscriptionCriteria criteria = subscription.getCriteria();
			if (canonical == null || canonical.isTopicSubscription() || criteria == null
					|| criteria.getType() == TypeEnum.STARTYPE_EXPRESSION
					|| criteria.getApplicableResourceTypes().contains(type)) {
				return true;
			}
		}
		return false;
	}
}
