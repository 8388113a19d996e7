package org.patientcontracts.hapi;

import ca.uhn.fhir.context.support.IValidationSupport;
import ca.uhn.fhir.jpa.api.config.JpaStorageSettings;
import ca.uhn.fhir.jpa.api.dao.IFhirSystemDao;
import ca.uhn.fhir.jpa.provider.IJpaSystemProvider;
import ca.uhn.fhir.jpa.provider.JpaCapabilityStatementProvider;
import ca.uhn.fhir.jpa.provider.ValueSetOperationProvider;
import ca.uhn.fhir.jpa.search.DatabaseBackedPagingProvider;
import ca.uhn.fhir.narrative2.NullNarrativeGenerator;
import ca.uhn.fhir.rest.api.EncodingEnum;
import ca.uhn.fhir.rest.server.RestfulServer;
import ca.uhn.fhir.rest.server.interceptor.LoggingInterceptor;
import ca.uhn.fhir.rest.server.provider.ResourceProviderFactory;
import ca.uhn.fhir.rest.server.util.ISearchParamRegistry;
import org.springframework.beans.factory.config.AutowireCapableBeanFactory;
import org.springframework.boot.web.servlet.ServletRegistrationBean;
import org.springframework.context.annotation.Bean;
import org.springframework.context.annotation.Configuration;

/** The FHIR REST API: resource providers, system operations, paging and request logging. */
@Configuration
public class RestServerConfig {

	@Bean
	public RestfulServer restfulServer(
			IFhirSystemDao<?, ?> systemDao,
			ResourceProviderFactory resourceProviders,
			IJpaSystemProvider systemProvider,
			ValueSetOperationProvider valueSetOperations,
			JpaStorageSettings storageSettings,
			ISearchParamRegistry searchParamRegistry,
			IValidationSupport validationSupport,
			DatabaseBackedPagingProvider pagingProvider) {
		RestfulServer server = new RestfulServer(systemDao.getContext());
		// The service writes its own narratives; HAPI must store what it is given.
		systemDao.getContext().setNarrativeGenerator(new NullNarrativeGenerator());
		// HAPI strips versions from references by default; a Provenance must keep the version of
		// the contract it records (see StorageConfig's auto-versioned paths).
		systemDao.getContext().getParserOptions().setDontStripVersionsFromReferencesAtPaths(
				StorageConfig.VERSIONED_REFERENCE_PATHS);
		server.registerProviders(resourceProviders.createProviders());
		server.registerProvider(systemProvider);
		server.registerProvider(valueSetOperations);
		JpaCapabilityStatementProvider capabilities = new JpaCapabilityStatementProvider(
				server, systemDao, storageSettings, searchParamRegistry, validationSupport);
		capabilities.setImplementationDescription("Patient contracts HAPI FHIR R4 server");
		server.setServerConformanceProvider(capabilities);
		server.setPagingProvider(pagingProvider);
		server.setDefaultResponseEncoding(EncodingEnum.JSON);
		server.registerInterceptor(requestLog());
		return server;
	}

	/** One line per request, carrying the caller's X-Request-ID so a request can be followed across. */
	private static LoggingInterceptor requestLog() {
		LoggingInterceptor log = new LoggingInterceptor();
		log.setLoggerName("fhir.request");
		log.setMessageFormat(
				"request_id=${requestId} op=${operationType} target=${idOrResourceName} status=ok"
						+ " ms=${processingTimeMillis}");
		log.setErrorMessageFormat(
				"request_id=${requestId} op=${operationType} target=${idOrResourceName} status=error"
						+ " message=${exceptionMessage}");
		log.setLogExceptions(false);
		return log;
	}

	@Bean
	public ServletRegistrationBean<RestfulServer> fhirServlet(
			RestfulServer server, AutowireCapableBeanFactory beanFactory, LauncherProperties props) {
		beanFactory.autowireBean(server);
		ServletRegistrationBean<RestfulServer> registration =
				new ServletRegistrationBean<>(server, props.servletMapping());
		registration.setLoadOnStartup(1);
		return registration;
	}
}
