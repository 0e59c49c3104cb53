// Drive dpproxy through node-postgres (npm `pg`) and print one `key=value`
// line per observation for integration/clients_test.go to check.
// Usage: node client_check.js HOST PORT USER PASSWORD
'use strict';
const { Client } = require('pg');

const COUNT = 'SELECT count(*) FROM patients WHERE age > 40';

async function main() {
  const [host, port, user, password] = process.argv.slice(2);
  const c = new Client({ host, port: Number(port), user, password, database: 'demo', ssl: false });
  const notices = [];
  c.on('notice', (n) => notices.push(n.message));
  await c.connect();
  await c.query('SET dp.epsilon = 1');
  let r = await c.query(COUNT); // simple protocol
  console.log(`simple_count=${r.rows[0].count}`);
  console.log(`count_type=${r.fields[0].dataTypeID}`);
  // A named prepared statement, executed twice (parsed once).
  for (let i = 0; i < 2; i++) {
    r = await c.query({ name: 'dp-count', text: COUNT });
    console.log(`named_count=${r.rows[0].count}`);
  }
  // A parameterised catalog query (extended protocol with $1).
  r = await c.query('SELECT column_name FROM information_schema.columns WHERE table_name = $1 ORDER BY ordinal_position', ['patients']);
  console.log(`columns=${r.rows.map((x) => x.column_name).join(',')}`);
  // A parameterised DP query.
  try {
    r = await c.query('SELECT count(*) FROM patients WHERE age > $1', [40]);
    console.log(`param_count=${r.rows[0].count}`);
  } catch (e) {
    console.log(`param_refusal=${e.code} ${e.message}`);
  }
  try {
    await c.query('SELECT * FROM patients');
    console.log('refusal=none');
  } catch (e) {
    console.log(`refusal=${e.code}`);
  }
  r = await c.query('SELECT 1 AS one');
  console.log(`after_refusal=${r.rows[0].one}`);
  console.log(`notice=${notices.length > 0 ? notices[0] : ''}`);
  await c.end();
}

main().catch((e) => {
  console.log(`error=${e.code || ''} ${e.message}`);
  process.exit(1);
});
