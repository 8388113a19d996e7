import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.List;
import org.patientcontracts.hapi.H2IdLookupInspector;

/**
 * How H2 runs HAPI's lookup of client-assigned ids, as HAPI sends it and as the launcher's
 * inspector rewrites it. Run with the launcher's classes, Hibernate, H2 and SLF4J's API on the
 * class path:
 *
 * <pre>java -cp ... IdLookupPlan.java "&lt;the statement&gt;" [type/id ...]</pre>
 *
 * It prints "rewritten " and the statement the inspector made of it. Given (type, id) pairs,
 * it also runs both forms: the table is hfj_resource as Hibernate makes it for HAPI 8.8 (the
 * columns the lookup reads and the unique (res_type, fhir_id) constraint), holding 2,000
 * resources of two types. For each form of the statement, bound to the given pairs, it prints
 * H2's plan on one line after "plan ", then each row found after "row sent " or "row rewritten "
 * (type/id).
 */
public class IdLookupPlan {
	public static void main(String[] args) throws Exception {
		String sql = args[0];
		List<String[]> pairs = new ArrayList<>();
		for (int i = 1; i < args.length; i++) {
			pairs.add(args[i].split("/", 2));
		}
		String rewritten = new H2IdLookupInspector().inspect(sql);
		System.out.println("rewritten " + rewritten);
		if (pairs.isEmpty()) {
			return;
		}
		try (Connection db = DriverManager.getConnection("jdbc:h2:mem:lookup")) {
			try (Statement ddl = db.createStatement()) {
				ddl.execute("create table hfj_resource (res_id bigint primary key, res_type varchar(40) not null,"
						+ " fhir_id varchar(64) not null, res_deleted_at timestamp, partition_id integer,"
						+ " constraint idx_res_type_fhir_id unique (res_type, fhir_id))");
			}
			try (PreparedStatement insert = db.prepareStatement("insert into hfj_resource values (?, ?, ?, null, null)")) {
				for (int n = 0; n < 2000; n++) {
					insert.setLong(1, n);
					insert.setString(2, n % 2 == 0 ? "AuditEvent" : "CarePlan");
					insert.setString(3, "r" + n);
					insert.addBatch();
				}
				insert.executeBatch();
			}
			String[][] forms = {{"sent", sql}, {"rewritten", rewritten}};
			for (String[] form : forms) {
				System.out.println("plan " + run(db, "explain " + form[1], pairs).get(0).replaceAll("\\s+", " "));
				for (String row : run(db, form[1], pairs)) {
					System.out.println("row " + form[0] + " " + row);
				}
			}
		}
	}

	private static List<String> run(Connection db, String sql, List<String[]> pairs) throws Exception {
		List<String> out = new ArrayList<>();
		try (PreparedStatement query = db.prepareStatement(sql)) {
			int at = 1;
			for (String[] pair : pairs) {
				query.setString(at++, pair[0]);
				query.setString(at++, pair[1]);
			}
			try (ResultSet rows = query.executeQuery()) {
				while (rows.next()) {
					out.add(rows.getMetaData().getColumnCount() == 1
							? rows.getString(1)
							: rows.getString("res_type") + "/" + rows.getString("fhir_id"));
				}
			}
		}
		return out;
	}
}
