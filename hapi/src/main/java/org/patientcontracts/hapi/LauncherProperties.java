package org.patientcontracts.hapi;

import java.nio.file.Path;
import org.springframework.boot.context.properties.ConfigurationProperties;

/**
 * The launcher's own settings, bound from {@code hapi.*} properties. Each can be given on the command
 * line ({@code --hapi.port=8090}) or in the environment ({@code HAPI_PORT=8090}).
 *
 * @param port HTTP port
 * @param basePath path the FHIR API is served under, e.g. {@code /fhir}
 * @param dataDir directory holding the H2 database file when no JDBC URL is given
 * @param jdbcUrl JDBC URL of the database; empty means an H2 file under {@code dataDir}
 * @param jdbcUsername database user
 * @param jdbcPassword database password
 * @param defaultPageSize search page size when the client sends no {@code _count}
 * @param maxPageSize the largest {@code _count} honoured
 */
@ConfigurationProperties(prefix = "hapi")
public record LauncherProperties(
		int port,
		String basePath,
		String dataDir,
		String jdbcUrl,
		String jdbcUsername,
		String jdbcPassword,
		int defaultPageSize,
		int maxPageSize) {

	/** The JDBC URL in use: the configured one, or an H2 file under the data directory. */
	public String resolvedJdbcUrl() {
		if (jdbcUrl != null && !jdbcUrl.isBlank()) {
			return jdbcUrl;
		}
		Path file = Path.of(dataDir, "h2", "hapi").toAbsolutePath().normalize();
		return "jdbc:h2:file:" + file;
	}

	/** The servlet mapping for the FHIR API, e.g. {@code /fhir/*}. */
	public String servletMapping() {
		String trimmed = basePath.endsWith("/") ? basePath.substring(0, basePath.length() - 1) : basePath;
		return (trimmed.startsWith("/") ? trimmed : "/" + trimmed) + "/*";
	}
}
