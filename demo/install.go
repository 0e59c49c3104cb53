package demo

import (
	"context"
	"fmt"
	"io"

	"github.com/jackc/pgx/v5"
)

// ReaderRole is the read-only role dpproxy connects upstream as.
const ReaderRole = "dpproxy_reader"

// Install creates the demo database, its data and a read-only role for the
// proxy, unless the database exists already. dsn returns a superuser
// connection string for a database name. Progress goes to progress.
func Install(ctx context.Context, dsn func(db string) string, progress io.Writer) error {
	admin, err := pgx.Connect(ctx, dsn("postgres"))
	if err != nil {
		return err
	}
	defer admin.Close(ctx)
	var exists bool
	if err := admin.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'demo')").Scan(&exists); err != nil {
		return err
	}
	if exists {
		return nil
	}
	fmt.Fprintf(progress, "loading %d demo patients ...\n", PatientRows)
	for _, sql := range []string{
		"CREATE DATABASE demo",
		"DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '" + ReaderRole + "') THEN CREATE ROLE " + ReaderRole + " LOGIN; END IF; END $$",
	} {
		if _, err := admin.Exec(ctx, sql); err != nil {
			return err
		}
	}
	db, err := pgx.Connect(ctx, dsn("demo"))
	if err != nil {
		return err
	}
	defer db.Close(ctx)
	if err := Load(ctx, db); err != nil {
		return err
	}
	_, err = db.Exec(ctx, `GRANT SELECT ON ALL TABLES IN SCHEMA public TO `+ReaderRole+`;
		ALTER ROLE `+ReaderRole+` SET default_transaction_read_only = on`)
	return err
}
