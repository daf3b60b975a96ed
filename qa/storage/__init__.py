"""The rooms of one index's storage, one job each; `qa.store.Store` is their facade.

- `meta`: the schema and the meta rows (format, generation, article and passage counts), the manifest, the errors.
- `records`: reads of the database (row mapping, the filter SQL) and what a passage looks like to a derived index.
- `terms`: the per-term passage counts the database keeps for a lexical engine that gives none (Milvus BM25).
- `indexes`: the derived-index set: open, rebuild, attach, fill, apply, publish, save; and searching it.
- `writes`: the one write transaction, and the participants it calls before and after its commit.
"""
