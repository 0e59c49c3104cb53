// ClientCheck drives dpproxy through pgjdbc (Debian's libpostgresql-jdbc-java)
// and prints one `key=value` line per observation for integration/clients_test.go
// to check. Usage: java -cp postgresql.jar:. ClientCheck JDBC_URL USER PASSWORD
import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.ResultSetMetaData;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;

public class ClientCheck {
    static final String COUNT = "SELECT count(*) FROM patients WHERE age > 40";

    public static void main(String[] args) throws Exception {
        Properties props = new Properties();
        props.setProperty("user", args[1]);
        props.setProperty("password", args[2]);
        try (Connection c = DriverManager.getConnection(args[0], props)) {
            DatabaseMetaData md = c.getMetaData();
            System.out.println("product=" + md.getDatabaseProductName() + " " + md.getDatabaseProductVersion());
            List<String> tables = new ArrayList<>();
            try (ResultSet rs = md.getTables(null, "public", "%", new String[] {"TABLE"})) {
                while (rs.next()) tables.add(rs.getString("TABLE_NAME"));
            }
            System.out.println("tables=" + String.join(",", tables));
            List<String> cols = new ArrayList<>();
            try (ResultSet rs = md.getColumns(null, "public", "patients", "%")) {
                while (rs.next()) cols.add(rs.getString("COLUMN_NAME") + ":" + rs.getString("TYPE_NAME"));
            }
            System.out.println("columns=" + String.join(",", cols));
            try (ResultSet rs = md.getPrimaryKeys(null, "public", "patients")) {
                while (rs.next()) System.out.println("pkey=" + rs.getString("COLUMN_NAME"));
            }
            try (ResultSet rs = md.getSchemas()) {
                List<String> s = new ArrayList<>();
                while (rs.next()) s.add(rs.getString(1));
                System.out.println("schemas=" + String.join(",", s));
            }
            try (Statement st = c.createStatement()) {
                st.execute("SET dp.epsilon = 1");
                try (ResultSet rs = st.executeQuery(COUNT)) {
                    ResultSetMetaData rmd = rs.getMetaData();
                    rs.next();
                    System.out.println("count_type=" + rmd.getColumnTypeName(1));
                    System.out.println("count=" + rs.getLong(1));
                }
                try (ResultSet rs = st.executeQuery("SELECT current_schema()")) {
                    rs.next();
                    System.out.println("current_schema=" + rs.getString(1));
                }
                try {
                    st.executeQuery("SELECT * FROM patients");
                    System.out.println("refusal=none");
                } catch (SQLException e) {
                    System.out.println("refusal=" + e.getSQLState());
                }
            }
            // Server-side prepared statements: pgjdbc switches to a named
            // statement after prepareThreshold (5) executions; binary results.
            try (PreparedStatement ps = c.prepareStatement(COUNT)) {
                for (int i = 0; i < 6; i++) {
                    try (ResultSet rs = ps.executeQuery()) {
                        rs.next();
                        System.out.println("prepared_count=" + rs.getLong(1));
                    }
                }
            }
            try (PreparedStatement ps = c.prepareStatement("SELECT count(*) FROM patients WHERE age > ?")) {
                ps.setInt(1, 40);
                try (ResultSet rs = ps.executeQuery()) {
                    rs.next();
                    System.out.println("param_count=" + rs.getLong(1));
                } catch (SQLException e) {
                    System.out.println("param_refusal=" + e.getSQLState() + " " + e.getMessage());
                }
            }
            // A transaction with autocommit off, as many tools run.
            c.setAutoCommit(false);
            try (Statement st = c.createStatement(); ResultSet rs = st.executeQuery(COUNT)) {
                rs.next();
                System.out.println("tx_count=" + rs.getLong(1));
            }
            c.commit();
            // A cursor-style fetch: with autocommit off and a fetch size,
            // pgjdbc executes a named portal with a row limit and reads it
            // in parts (PortalSuspended).
            try (Statement st = c.createStatement()) {
                st.setFetchSize(2);
                try (ResultSet rs = st.executeQuery("SELECT column_name FROM information_schema.columns WHERE table_schema = 'public' AND table_name = 'patients' ORDER BY ordinal_position")) {
                    List<String> names = new ArrayList<>();
                    while (rs.next()) names.add(rs.getString(1));
                    System.out.println("fetched_columns=" + String.join(",", names));
                }
            }
            c.commit();
        }
    }
}
