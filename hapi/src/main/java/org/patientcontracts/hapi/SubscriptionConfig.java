package org.patientcontracts.hapi;

import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.interceptor.api.IInterceptorService;
import ca.uhn.fhir.jpa.model.config.SubscriptionSettings;
import ca.uhn.fhir.jpa.subscription.match.deliver.email.IEmailSender;
import ca.uhn.fhir.jpa.subscription.match.registry.SubscriptionRegistry;
import org.hl7.fhir.dstu2.model.Subscription.SubscriptionChannelType;
import org.springframework.context.annotation.Bean;
import org.springframework.context.annotation.Configuration;

/** Rest-hook subscriptions: how the service learns of changes other systems make in HAPI. */
@Configuration
public class SubscriptionConfig {

	@Bean
	public SubscriptionSettings subscriptionSettings() {
		SubscriptionSettings settings = new SubscriptionSettings();
		// Without a supported channel type a Subscription stays "requested" and never fires.
		settings.addSupportedSubscriptionType(SubscriptionChannelType.RESTHOOK);
		return settings;
	}

	/** Changes no Subscription can match stay out of the pipeline (see the class). */
	@Bean
	public UnwatchedChangesFilter unwatchedChangesFilter(
			FhirContext context, SubscriptionRegistry registry, IInterceptorService interceptors) {
		UnwatchedChangesFilter filter = new UnwatchedChangesFilter(context, registry::getAll);
		interceptors.registerInterceptor(filter);
		return filter;
	}

	/** HAPI's delivery wiring asks for a mail sender even when e-mail channels are off. */
	@Bean
	public IEmailSender emailSender() {
		return details -> {
			throw new UnsupportedOperationException("e-mail subscriptions are not enabled");
		};
	}
}
