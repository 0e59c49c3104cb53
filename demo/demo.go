package demo

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
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

// Departments is the public lookup table's rows and the public domain of
// visits.department.
var Departments = []struct {
	Name     string
	Floor    int32
	Building string
}{
	{"cardiology", 3, "north"}, {"emergency", 0, "south"}, {"general", 1, "north"},
	{"oncology", 4, "east"}, {"pediatrics", 2, "east"},
}

var clinics = []string{"downtown", "harbor", "hillside", "midtown", "riverside", "uptown"}

// Visit is one generated visit: several per patient (a privacy unit).
type Visit struct {
	ID         int64
	PatientID  int32
	VisitDate  time.Time
	Department string
	Cost       float64
	Clinic     string
}

// Visits returns the deterministic demo visits: 1 to 12 per patient, skewed
// so that a few patients have many.
func Visits(patients []Patient) []Visit {
	r := rand.New(rand.NewPCG(7, 2026))
	start := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	var out []Visit
	for _, p := range patients {
		n := 1 + int(r.ExpFloat64()*2)
		n = min(n, 12)
		for range n {
			dept := Departments[r.IntN(len(Departments))].Name
			if p.Age < 16 && r.IntN(2) == 0 {
				dept = "pediatrics"
			}
			cost := math.Round((r.ExpFloat64()*300+40)*100) / 100
			if dept == "oncology" {
				cost *= 4
			}
			out = append(out, Visit{
				ID: int64(len(out) + 1), PatientID: p.ID, VisitDate: start.AddDate(0, 0, r.IntN(730)),
				Department: dept, Cost: math.Min(cost, 20000), Clinic: clinics[r.IntN(len(clinics))],
			})
		}
	}
	return out
}

// Schema creates the demo tables.
const Schema = `
DROP TABLE IF EXISTS visits;
DROP TABLE IF EXISTS departments;
DROP TABLE IF EXISTS patients;
CREATE TABLE patients (
    patient_id integer PRIMARY KEY,
    age        integer NOT NULL,
    sex        text NOT NULL,
    zip        text NOT NULL,
    diagnosis  text NOT NULL,
    income     integer,
    visit_date date NOT NULL
);
CREATE TABLE departments (
    name     text PRIMARY KEY,
    floor    integer NOT NULL,
    building text NOT NULL
);
CREATE TABLE visits (
    visit_id   bigint PRIMARY KEY,
    patient_id integer NOT NULL REFERENCES patients,
    visit_date date NOT NULL,
    department text NOT NULL REFERENCES departments,
    cost       numeric(10,2) NOT NULL,
    clinic     text NOT NULL
);
CREATE INDEX visits_patient_id ON visits (patient_id);`

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
	deps := pgx.CopyFromSlice(len(Departments), func(i int) ([]any, error) {
		d := Departments[i]
		return []any{d.Name, d.Floor, d.Building}, nil
	})
	if _, err := conn.CopyFrom(ctx, pgx.Identifier{"departments"}, []string{"name", "floor", "building"}, deps); err != nil {
		return fmt.Errorf("loading demo departments: %w", err)
	}
	visits := Visits(rows)
	vsrc := pgx.CopyFromSlice(len(visits), func(i int) ([]any, error) {
		v := visits[i]
		return []any{v.ID, v.PatientID, v.VisitDate, v.Department, strconv.FormatFloat(v.Cost, 'f', 2, 64), v.Clinic}, nil
	})
	vcols := []string{"visit_id", "patient_id", "visit_date", "department", "cost", "clinic"}
	if _, err := conn.CopyFrom(ctx, pgx.Identifier{"visits"}, vcols, vsrc); err != nil {
		return fmt.Errorf("loading demo visits: %w", err)
	}
	_, err := conn.Exec(ctx, "ANALYZE patients; ANALYZE departments; ANALYZE visits")
	return err
}
