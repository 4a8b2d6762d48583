"""flanmix: build Flan-Collection-style instruction-tuning corpora with Apache Beam.

Nothing happens at import: catalogs, templates and mixtures are loaded by explicit calls
(`catalog.load_catalog`, `templates.load_templates`, `mixtures.load_mixture`).
"""

__version__ = "0.1.0"
