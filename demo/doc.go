// Package demo generates dpproxy's demo database: a deterministic synthetic
// patients table (the same rows on every machine, from a fixed-seed PCG
// generator; this is demo data, never noise) and loads it into PostgreSQL.
// The matching policy is policy.yaml beside this file, embedded as Policy.
package demo
