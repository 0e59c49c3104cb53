"""Drive dpproxy through psycopg2, SQLAlchemy reflection and pandas.read_sql
(Debian's python3 packages) and print one `key=value` line per observation
for integration/clients_test.go to check.

Usage: python3 client_check.py HOST PORT USER PASSWORD
"""
import sys

import pandas as pd
import psycopg2
import sqlalchemy as sa

COUNT = "SELECT count(*) FROM patients WHERE age > 40"


def main():
    host, port, user, password = sys.argv[1:5]
    conn = psycopg2.connect(host=host, port=port, user=user, password=password, dbname="demo", sslmode="disable")
    cur = conn.cursor()  # psycopg2 opens a transaction with BEGIN
    cur.execute("SET dp.epsilon = 1")
    cur.execute(COUNT)
    print("psycopg2_count=%d" % cur.fetchone()[0])
    try:
        cur.execute("SELECT * FROM patients")
        print("psycopg2_refusal=none")
    except psycopg2.Error as e:
        print("psycopg2_refusal=%s" % e.pgcode)
    conn.rollback()
    conn.autocommit = True
    cur.execute("SET dp.epsilon = 1")
    # psycopg2 interpolates parameters client-side.
    cur.execute("SELECT count(*) FROM patients WHERE age > %s AND sex = %s", (40, "F"))
    print("psycopg2_param_count=%d" % cur.fetchone()[0])
    print("notice=%s" % (conn.notices[-1].strip() if conn.notices else ""))
    conn.close()

    url = "postgresql+psycopg2://%s:%s@%s:%s/demo?sslmode=disable" % (user, password, host, port)
    engine = sa.create_engine(url)
    insp = sa.inspect(engine)
    print("sa_tables=%s" % ",".join(sorted(insp.get_table_names())))
    cols = insp.get_columns("patients")
    print("sa_columns=%s" % ",".join("%s:%s" % (c["name"], c["type"]) for c in cols))
    print("sa_pkey=%s" % ",".join(insp.get_pk_constraint("patients")["constrained_columns"]))
    print("sa_indexes=%d" % len(insp.get_indexes("patients")))
    print("sa_has_table=%s" % engine.dialect.has_table(engine.connect(), "patients"))
    meta = sa.MetaData()
    patients = sa.Table("patients", meta, autoload_with=engine)
    with engine.connect() as c:
        c.execute(sa.text("SET dp.epsilon = 1"))
        n = c.execute(sa.select(sa.func.count()).select_from(patients).where(patients.c.age > 40)).scalar()
        print("sa_core_count=%d" % n)
        df = pd.read_sql(COUNT, c)
        print("pandas_count=%d" % int(df.iloc[0, 0]))
        print("pandas_columns=%s" % ",".join(df.columns))
        try:
            pd.read_sql("SELECT age FROM patients", c)
            print("pandas_refusal=none")
        except sa.exc.DBAPIError as e:
            print("pandas_refusal=%s" % e.orig.pgcode)


if __name__ == "__main__":
    main()
