package main

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
)

// The bench schema. people is row-level private (one row per person),
// purchases has a privacy unit (person_id) with several skewed rows per unit,
// stores is public, tiny is a small row-level private table whose count is
// proxy-bound.
const schema = `
DROP TABLE IF EXISTS purchases, purchases_shadow, people, stores, tiny, bench_meta;
CREATE TABLE people (
    person_id integer PRIMARY KEY,
    age       integer NOT NULL,
    region    text    NOT NULL,
    zip       integer NOT NULL,
    income    integer NOT NULL
);
CREATE TABLE stores (
    store_id integer PRIMARY KEY,
    city     text    NOT NULL
);
CREATE TABLE purchases (
    purchase_id bigint  PRIMARY KEY,
    person_id   integer NOT NULL,
    store_id    integer NOT NULL,
    category    text    NOT NULL,
    amount      numeric(10,2) NOT NULL,
    ts          date    NOT NULL
);
CREATE TABLE tiny (
    id   integer PRIMARY KEY,
    flag integer NOT NULL
);
CREATE TABLE bench_meta (scale bigint NOT NULL);`

const indexes = `
CREATE INDEX people_zip ON people (zip);
CREATE INDEX purchases_person_id ON purchases (person_id);
ANALYZE people; ANALYZE stores; ANALYZE purchases; ANALYZE tiny;`

// Public domains, declared in the bench policy.
var (
	regions    = []string{"north", "south", "east", "west", "central", "coast", "islands", "mountains"}
	categories = []string{"groceries", "electronics", "clothing", "books", "toys", "garden", "sports", "beauty", "travel", "music"}
	cities     = []string{"Amsterdam", "Berlin", "Lisbon", "Madrid", "Oslo", "Paris", "Prague", "Rome", "Vienna", "Warsaw"}
)

const (
	storeCount = 200
	tinyRows   = 1000
	zipCount   = 1000
	// peoplePerPurchase: the people table has one row per 5 purchases
	// (1M purchases over 200k people, as in issue 8).
	peopleDivisor = 5
	// maxRowsPerUnit and maxGroupsPerUnit are the bench policy's bounds
	// for purchases.
	maxRowsPerUnit   = 10
	maxGroupsPerUnit = 3
)

// weighted returns a deterministic skewed pick among n items: item i has
// weight 1/(i+1) (Zipf with exponent 1).
func weighted(r *rand.Rand, cum []float64) int {
	u := r.Float64() * cum[len(cum)-1]
	for i, c := range cum {
		if u < c {
			return i
		}
	}
	return len(cum) - 1
}

func zipfCum(n int) []float64 {
	cum := make([]float64, n)
	s := 0.0
	for i := range cum {
		s += 1 / float64(i+1)
		cum[i] = s
	}
	return cum
}

// funcSource streams generated rows into COPY without holding them.
type funcSource struct {
	n, i int
	row  func(i int) []any
	cur  []any
}

func (s *funcSource) Next() bool {
	if s.i >= s.n {
		return false
	}
	s.cur = s.row(s.i)
	s.i++
	return true
}
func (s *funcSource) Values() ([]any, error) { return s.cur, nil }
func (s *funcSource) Err() error             { return nil }

// load replaces the bench tables with purchases rows of generated data
// (deterministic: the same scale gives the same rows).
func load(ctx context.Context, conn *pgx.Conn, purchases int) error {
	if _, err := conn.Exec(ctx, schema); err != nil {
		return fmt.Errorf("schema: %w", err)
	}
	people := max(1, purchases/peopleDivisor)

	r := rand.New(rand.NewPCG(2026, 8))
	regionCum := zipfCum(len(regions))
	src := &funcSource{n: people, row: func(i int) []any {
		age := int32(max(0, min(99, r.NormFloat64()*18+45)))
		income := int32(min(400000, r.ExpFloat64()*40000+5000))
		return []any{int32(i + 1), age, regions[weighted(r, regionCum)], int32(1 + r.IntN(zipCount)), income}
	}}
	if _, err := conn.CopyFrom(ctx, pgx.Identifier{"people"}, []string{"person_id", "age", "region", "zip", "income"}, src); err != nil {
		return fmt.Errorf("people: %w", err)
	}

	src = &funcSource{n: storeCount, row: func(i int) []any {
		return []any{int32(i + 1), cities[i%len(cities)]}
	}}
	if _, err := conn.CopyFrom(ctx, pgx.Identifier{"stores"}, []string{"store_id", "city"}, src); err != nil {
		return fmt.Errorf("stores: %w", err)
	}
	src = &funcSource{n: tinyRows, row: func(i int) []any { return []any{int32(i + 1), int32(i % 7)} }}
	if _, err := conn.CopyFrom(ctx, pgx.Identifier{"tiny"}, []string{"id", "flag"}, src); err != nil {
		return fmt.Errorf("tiny: %w", err)
	}

	// Purchases arrive over time, so one person's rows are scattered
	// through the table. 80% of rows go to a uniformly chosen person (about
	// 4 each, Poisson), 20% to 2% of people (about 50 each): many units
	// exceed max_rows_per_unit.
	heavy := max(1, people/50)
	catCum := zipfCum(len(categories))
	start := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	r = rand.New(rand.NewPCG(2026, 9))
	src = &funcSource{n: purchases, row: func(i int) []any {
		var person int
		if r.IntN(5) == 0 {
			person = 1 + r.IntN(heavy)*(people/heavy) // heavy buyers spread over the id range
		} else {
			person = 1 + r.IntN(people)
		}
		amount := math.Round(math.Min(5000, math.Exp(r.NormFloat64()*1.1+3.2))*100) / 100
		return []any{int64(i + 1), int32(person), int32(1 + r.IntN(storeCount)), categories[weighted(r, catCum)],
			strconv.FormatFloat(amount, 'f', 2, 64), start.AddDate(0, 0, r.IntN(730))}
	}}
	cols := []string{"purchase_id", "person_id", "store_id", "category", "amount", "ts"}
	if _, err := conn.CopyFrom(ctx, pgx.Identifier{"purchases"}, cols, src); err != nil {
		return fmt.Errorf("purchases: %w", err)
	}
	if _, err := conn.Exec(ctx, indexes); err != nil {
		return fmt.Errorf("indexes: %w", err)
	}
	_, err := conn.Exec(ctx, "INSERT INTO bench_meta VALUES ($1)", purchases)
	return err
}

// parseScale reads 100k, 1m, 10m or a plain number of purchase rows.
func parseScale(s string) (int, error) {
	mult := 1
	switch {
	case len(s) > 1 && (s[len(s)-1] == 'k' || s[len(s)-1] == 'K'):
		mult, s = 1000, s[:len(s)-1]
	case len(s) > 1 && (s[len(s)-1] == 'm' || s[len(s)-1] == 'M'):
		mult, s = 1000000, s[:len(s)-1]
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("scale %q: want e.g. 100k, 1m or 10m", s)
	}
	return n * mult, nil
}
