package org.patientcontracts.hapi;

import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.jpa.api.IDaoRegistry;
import ca.uhn.fhir.jpa.api.config.JpaStorageSettings;
import ca.uhn.fhir.jpa.api.config.ThreadPoolFactoryConfig;
import ca.uhn.fhir.jpa.api.dao.IFhirSystemDao;
import ca.uhn.fhir.jpa.config.util.HapiEntityManagerFactoryUtil;
import ca.uhn.fhir.jpa.config.util.ResourceCountCacheUtil;
import ca.uhn.fhir.jpa.model.config.PartitionSettings;
import ca.uhn.fhir.jpa.model.dialect.HapiFhirH2Dialect;
import ca.uhn.fhir.jpa.model.dialect.HapiFhirPostgresDialect;
import ca.uhn.fhir.jpa.provider.DaoRegistryResourceSupportedSvc;
import ca.uhn.fhir.jpa.search.DatabaseBackedPagingProvider;
import ca.uhn.fhir.jpa.search.IStaleSearchDeletingSvc;
import ca.uhn.fhir.jpa.search.StaleSearchDeletingSvcImpl;
import ca.uhn.fhir.jpa.util.ResourceCountCache;
import ca.uhn.fhir.rest.api.IResourceSupportedSvc;
import com.zaxxer.hikari.HikariDataSource;
import jakarta.persistence.EntityManagerFactory;
import java.util.HashMap;
import java.util.Map;
import javax.sql.DataSource;
import org.hibernate.boot.model.naming.CamelCaseToUnderscoresNamingStrategy;
import org.hibernate.cfg.AvailableSettings;
import org.hibernate.search.mapper.orm.cfg.HibernateOrmMapperSettings;
import org.springframework.beans.factory.config.ConfigurableListableBeanFactory;
import org.springframework.boot.context.properties.EnableConfigurationProperties;
import org.springframework.boot.orm.jpa.hibernate.SpringImplicitNamingStrategy;
import org.springframework.context.annotation.Bean;
import org.springframework.context.annotation.Configuration;
import org.springframework.context.annotation.Import;
import org.springframework.context.annotation.Primary;
import org.springframework.orm.jpa.JpaTransactionManager;
import org.springframework.orm.jpa.LocalContainerEntityManagerFactoryBean;
import org.springframework.transaction.annotation.EnableTransactionManagement;

/** Database, JPA and the storage rules the patient-contract service depends on. */
@Configuration
@EnableTransactionManagement
@EnableConfigurationProperties(LauncherProperties.class)
@Import(ThreadPoolFactoryConfig.class)
public class StorageConfig {

	/** References stored with the version of their target, e.g. Provenance.target. */
	static final String[] VERSIONED_REFERENCE_PATHS = {"Provenance.target"};

	/**
	 * Storage behaviour. Every choice here is one the service or its tests rely on; see hapi/README.md.
	 */
	@Bean
	public JpaStorageSettings jpaStorageSettings(LauncherProperties props) {
		JpaStorageSettings settings = new JpaStorageSettings();
		// A cached search result would hide a resource created a moment ago from a repeated search.
		settings.setReuseCachedSearchResultsForMillis(0L);
		settings.setAllowExternalReferences(false);
		settings.setAutoCreatePlaceholderReferenceTargets(false);
		settings.setEnforceReferentialIntegrityOnWrite(true);
		settings.setEnforceReferentialIntegrityOnDelete(true);
		settings.setDeleteEnabled(true);
		settings.setAllowMultipleDelete(true);
		settings.setExpungeEnabled(true);
		settings.setFetchSizeDefaultMaximum(props.maxPageSize());
		// A Provenance records who agreed to which version of a contract, so its target must
		// name that version even when the writer refers to the CarePlan inside a transaction.
		settings.setAutoVersionReferenceAtPaths(VERSIONED_REFERENCE_PATHS);
		settings.setHibernateSearchIndexFullText(false);
		settings.setHibernateSearchIndexSearchParams(false);
		return settings;
	}

	@Bean
	public DataSource dataSource(LauncherProperties props) {
		HikariDataSource dataSource = new HikariDataSource();
		dataSource.setJdbcUrl(props.resolvedJdbcUrl());
		dataSource.setUsername(props.jdbcUsername());
		dataSource.setPassword(props.jdbcPassword());
		dataSource.setMaximumPoolSize(20);
		return dataSource;
	}

	@Bean
	public PartitionSettings partitionSettings() {
		return new PartitionSettings();
	}

	@Primary
	@Bean
	public LocalContainerEntityManagerFactoryBean entityManagerFactory(
			ConfigurableListableBeanFactory beanFactory,
			FhirContext fhirContext,
			JpaStorageSettings storageSettings,
			DataSource dataSource,
			LauncherProperties props) {
		LocalContainerEntityManagerFactoryBean factory =
				HapiEntityManagerFactoryUtil.newEntityManagerFactory(beanFactory, fhirContext, storageSettings);
		factory.setPersistenceUnitName("HAPI_PU");
		factory.setDataSource(dataSource);
		factory.setJpaPropertyMap(jpaProperties(props.resolvedJdbcUrl()));
		return factory;
	}

	/** Hibernate settings; the dialect follows the JDBC URL so one switch moves HAPI to PostgreSQL. */
	static Map<String, Object> jpaProperties(String jdbcUrl) {
		Map<String, Object> jpa = new HashMap<>();
		boolean postgres = jdbcUrl.startsWith("jdbc:postgresql:");
		jpa.put(
				AvailableSettings.DIALECT,
				postgres ? HapiFhirPostgresDialect.class.getName() : HapiFhirH2Dialect.class.getName());
		jpa.put(AvailableSettings.HBM2DDL_AUTO, "update");
		jpa.put(AvailableSettings.SCANNER, "org.hibernate.boot.archive.scan.internal.DisabledScanner");
		jpa.put(AvailableSettings.IMPLICIT_NAMING_STRATEGY, SpringImplicitNamingStrategy.class.getName());
		jpa.put(AvailableSettings.PHYSICAL_NAMING_STRATEGY, CamelCaseToUnderscoresNamingStrategy.class.getName());
		jpa.put(AvailableSettings.STATEMENT_BATCH_SIZE, "20");
		jpa.put(AvailableSettings.USE_QUERY_CACHE, "false");
		jpa.put(AvailableSettings.USE_SECOND_LEVEL_CACHE, "false");
		jpa.put(AvailableSettings.FORMAT_SQL, "false");
		jpa.put(AvailableSettings.SHOW_SQL, "false");
		jpa.put(HibernateOrmMapperSettings.ENABLED, "false");
		if (!postgres) {
			jpa.put(AvailableSettings.STATEMENT_INSPECTOR, H2IdLookupInspector.class.getName());
		}
		return jpa;
	}

	@Bean
	@Primary
	public JpaTransactionManager transactionManager(EntityManagerFactory entityManagerFactory) {
		return new JpaTransactionManager(entityManagerFactory);
	}

	@Bean
	public IStaleSearchDeletingSvc staleSearchDeletingSvc() {
		return new StaleSearchDeletingSvcImpl();
	}

	@Bean
	public DatabaseBackedPagingProvider databaseBackedPagingProvider(LauncherProperties props) {
		DatabaseBackedPagingProvider paging = new DatabaseBackedPagingProvider();
		paging.setDefaultPageSize(props.defaultPageSize());
		paging.setMaximumPageSize(props.maxPageSize());
		return paging;
	}

	@Bean
	public IResourceSupportedSvc resourceSupportedSvc(IDaoRegistry daoRegistry) {
		return new DaoRegistryResourceSupportedSvc(daoRegistry);
	}

	@Bean(name = "myResourceCountsCache")
	public ResourceCountCache resourceCountsCache(IFhirSystemDao<?, ?> systemDao) {
		return ResourceCountCacheUtil.newResourceCountCache(systemDao);
	}
}
