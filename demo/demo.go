package demo

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"
)

// PatientRows is the size of the demo patients table.
const PatientRows = 40000

// Diagnoses is the public domain of patients.diagnosis.
var Diagnoses = []string{"asthma", "diabetes", "flu", "fracture", "hypertension", "migraine", "none", "covid"}

var zips = []string{"10001", "10002", "10003", "10011", "10016", "10019", "10025", "10027", "10032", "10451",
	"11201", "11206", "11211", "11215", "11375", "11432", "94103", "94110", "94117", "60614"}

// Patient is one generated row.
type Patient struct {
	ID        int32
	Age       int32
	Sex       string
	Zip       string
	Diagnosis string
	Income    int32
	VisitDate time.Time
}

// Patients returns the deterministic demo rows.
func Patients() []Patient {
	r := rand.New(rand.NewPCG(20261129, 42))
	start := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	out := make([]Patient, PatientRows)
	for i := range out {
		age := int32(r.NormFloat64()*20 + 45)
		age = max(0, min(age, 99))
		sex := "F"
		if r.IntN(100) < 48 {
			sex = "M"
		}
		diag := Diagnoses[r.IntN(len(Diagnoses))]
		if age > 55 && r.IntN(3) == 0 {
			diag = "hypertension"
		}
		income := int32(0)
		if age >= 18 {
			income = int32(r.ExpFloat64()*45000) + 8000
			income = min(income, 400000)
		}
		out[i] = Patient{
			ID:        int32(i + 1),
			Age:       age,
			Sex:       sex,
			Zip:       zips[r.IntN(len(zips))],
			Diagnosis: diag,
			Income:    income,
			VisitDate: start.AddDate(0, 0, r.IntN(730)),
		}
	}
	return out
}

// Schema creates the demo tables.
const Schema = `
DROP TABLE IF EXISTS patients;
CREATE TABLE patients (
    patient_id integer PRIMARY KEY,
    age        integer NOT NULL,
    sex        text NOT NULL,
    zip        text NOT NULL,
    diagnosis  text NOT NULL,
    income     integer,
    visit_date date NOT NULL
);`

// Load creates the demo tables in the database conn is connected to and fills
// them, replacing what was there.
func Load(ctx context.Context, conn *pgx.Conn) error {
	if _, err := conn.Exec(ctx, Schema); err != nil {
		return fmt.Errorf("creating demo schema: %w", err)
	}
	rows := Patients()
	src := pgx.CopyFromSlice(len(rows), func(i int) ([]any, error) {
		p := rows[i]
		return []any{p.ID, p.Age, p.Sex, p.Zip, p.Diagnosis, p.Income, p.VisitDate}, nil
	})
	cols := []string{"patient_id", "age", "sex", "zip", "diagnosis", "income", "visit_date"}
	if _, err := conn.CopyFrom(ctx, pgx.Identifier{"patients"}, cols, src); err != nil {
		return fmt.Errorf("loading demo patients: %w", err)
	}
	_, err := conn.Exec(ctx, "ANALYZE patients")
	return err
}
