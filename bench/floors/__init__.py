"""Independent floors: the least code that does what jitprov does at each step.

Each module here is what a careful engineer would write by hand for one step of a
sign-in, with the standard library and third-party libraries only (lxml, xmlsec,
cryptography, joserfc, python3-saml, sqlite3). None imports jitprov's packages (`rules`,
`engine`, `tui`) or a `bench` module that does: tests/test_bench_floors.py parses every
module here and fails if one does, and imports them all in a fresh process to check that
none of jitprov's code gets loaded. The stages assert that each floor gives jitprov's
result on the bench's inputs before they time anything.

- `saml`: a signed SAML Response validated with lxml, the SAML protocol XSD and xmlsec;
- `oidc`: an RS256 ID token validated with joserfc;
- `rules`: the demo's three rules files, the rules stage's 30-statement file and the end
  to end stage's rules, written as plain Python functions;
- `store`: the sqlite3 writes that leave the rows jitprov's SQLite store leaves;
- `pipeline`: python3-saml's `is_valid`, a hand mapping and sqlite3, the pipeline a team
  would build without jitprov (also runnable as a whole process over a folder).
"""
