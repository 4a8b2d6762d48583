"""Source snapshots: every source of a mixture read once through its loader, pinned as Parquet with a
sources.json (hashes, counts, loader arguments, library versions), and built from with
`flanmix build --sources DIR` (README, "Source snapshots").

    encoding   RawRow <-> Parquet, exact (types, key order, dead letters)
    manifest   sources.json: reading, its hash
    snapshot   the Beam job: plan (what to fetch, keep, report failed), fetch, verify, commit
    loader     the `snapshot` loader and the plan hook behind `build --sources`
    check      `sources verify` and `sources diff`
"""
