package org.patientcontracts.hapi;

import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.hibernate.resource.jdbc.spi.StatementInspector;
import org.slf4j.LoggerFactory;

/**
 * Lets H2 answer HAPI's lookup of client-assigned ids from its index instead of reading every
 * resource row.
 *
 * <p>Before a transaction writes, HAPI resolves the ids of all its {@code PUT Type/id} entries in
 * one query: {@code where (t.res_type=? and t.fhir_id=? or t.res_type=? and t.fhir_id=? ...)}.
 * PostgreSQL answers each branch from the unique index on {@code (res_type, fhir_id)}; H2's
 * planner cannot use an index for an OR of ANDs and evaluates the whole condition on every row of
 * {@code hfj_resource}, so such a transaction costs in proportion to the ids it names times the
 * resources stored (140 ms for 100 ids among 100,000 rows, against 0.1 ms from the index). The
 * service writes its AuditEvents that way, by the access record's id, so on H2 every access grew
 * dearer as the trail grew. The same condition as a row-value list, {@code ((t.res_type,
 * t.fhir_id) in ((?,?),(?,?) ...))}, H2 reads from the index; the parameters keep their order,
 * so the binding HAPI does afterwards is unchanged. Only installed for H2 (see {@link
 * StorageConfig#jpaProperties}); any other statement passes through as it came.
 */
public class H2IdLookupInspector implements StatementInspector {

	/** The OR of at least two (type, id) pairs on one table alias, with the alias captured. */
	private static final Pattern PAIRS = Pattern.compile(
			"\\((\\w+)\\.res_type=\\? and \\1\\.fhir_id=\\?((?: or \\1\\.res_type=\\? and \\1\\.fhir_id=\\?)+)\\)");

	private static final String MARK = ".fhir_id=? or ";

	/** Made once, as Hibernate starts; saying so lets an operator (and a test) see it is on. */
	public H2IdLookupInspector() {
		LoggerFactory.getLogger(H2IdLookupInspector.class)
				.info("H2: HAPI's lookups of client-assigned ids are rewritten to read the (res_type, fhir_id) index");
	}

	@Override
	public String inspect(String sql) {
		// Nearly every statement lacks the mark: the common case costs one substring search.
		if (!sql.contains(MARK)) {
			return sql;
		}
		Matcher matcher = PAIRS.matcher(sql);
		StringBuilder rewritten = new StringBuilder(sql.length());
		while (matcher.find()) {
			String alias = matcher.group(1);
			int pairs = 1 + countOf(matcher.group(2), " or ");
			StringBuilder list = new StringBuilder("((")
					.append(alias).append(".res_type,").append(alias).append(".fhir_id) in (");
			for (int i = 0; i < pairs; i++) {
				list.append(i == 0 ? "(?,?)" : ",(?,?)");
			}
			matcher.appendReplacement(rewritten, Matcher.quoteReplacement(list.append("))").toString()));
		}
		matcher.appendTail(rewritten);
		return rewritten.toString();
	}

	private static int countOf(String text, String part) {
		int count = 0;
		for (int at = text.indexOf(part); at >= 0; at = text.indexOf(part, at + part.length())) {
			count++;
		}
		return count;
	}
}
