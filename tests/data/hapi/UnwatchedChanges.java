import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.jpa.subscription.match.registry.ActiveSubscription;
import ca.uhn.fhir.jpa.subscription.model.CanonicalSubscription;
import ca.uhn.fhir.jpa.subscription.model.ResourceModifiedMessage;
import ca.uhn.fhir.rest.server.messaging.BaseResourceMessage.OperationTypeEnum;
import java.util.ArrayList;
import java.util.List;
import org.hl7.fhir.instance.model.api.IBaseResource;
import org.patientcontracts.hapi.UnwatchedChangesFilter;

/**
 * Which changes the launcher's filter lets into HAPI's subscription pipeline, given the active
 * Subscriptions. Run with the launcher's classes and libraries on the class path:
 *
 * <pre>java -cp ... UnwatchedChanges.java [criteria ...] -- [resource type ...]</pre>
 *
 * Each criteria string is one active Subscription (HAPI parses it as it does a Subscription's);
 * "topic" stands for a topic-based one. For each resource type, a change to a new resource of
 * that type is put to the filter as HAPI puts it, and the harness prints "queued Type" or
 * "skipped Type".
 */
public class UnwatchedChanges {
	public static void main(String[] args) {
		List<ActiveSubscription> active = new ArrayList<>();
		int at = 0;
		for (; !args[at].equals("--"); at++) {
			CanonicalSubscription subscription = new CanonicalSubscription();
			if (args[at].equals("topic")) {
				subscription.setTopicSubscription(true);
			} else {
				subscription.setCriteriaString(args[at]);
			}
			active.add(new ActiveSubscription(subscription, "channel-" + at));
		}
		FhirContext context = FhirContext.forR4Cached();
		UnwatchedChangesFilter filter = new UnwatchedChangesFilter(context, () -> active);
		for (at++; at < args.length; at++) {
			IBaseResource resource = context.getResourceDefinition(args[at]).newInstance();
			resource.setId(args[at] + "/1");
			ResourceModifiedMessage change = new ResourceModifiedMessage(context, resource, OperationTypeEnum.CREATE);
			System.out.println((filter.resourceModified(change) ? "queued " : "skipped ") + args[at]);
		}
	}
}
