package org.patientcontracts.hapi;

import ca.uhn.fhir.batch2.jobs.config.Batch2JobsConfig;
import ca.uhn.fhir.jpa.batch2.JpaBatch2Config;
import ca.uhn.fhir.jpa.config.r4.JpaR4Config;
import ca.uhn.fhir.jpa.subscription.channel.config.SubscriptionChannelConfig;
import ca.uhn.fhir.jpa.subscription.match.config.SubscriptionProcessorConfig;
import ca.uhn.fhir.jpa.subscription.submit.config.SubscriptionSubmitterConfig;
import org.springframework.boot.SpringApplication;
import org.springframework.boot.autoconfigure.SpringBootApplication;
import org.springframework.boot.autoconfigure.orm.jpa.HibernateJpaAutoConfiguration;
import org.springframework.context.annotation.Import;

/**
 * Entry point: a HAPI FHIR JPA server for FHIR R4 on embedded Tomcat.
 *
 * <p>The imported HAPI configurations give the JPA storage layer, rest-hook subscriptions and the
 * batch framework that conditional operations and reindexing rely on. Everything we choose ourselves
 * lives in {@link StorageConfig}, {@link SubscriptionConfig} and {@link RestServerConfig}.
 */
@SpringBootApplication(exclude = HibernateJpaAutoConfiguration.class)
@Import({
	JpaR4Config.class,
	JpaBatch2Config.class,
	Batch2JobsConfig.class,
	SubscriptionSubmitterConfig.class,
	SubscriptionProcessorConfig.class,
	SubscriptionChannelConfig.class
})
public class HapiLauncher {

	public static void main(String[] args) {
		SpringApplication.run(HapiLauncher.class, args);
	}
}
