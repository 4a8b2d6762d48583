"""Reading a flanmix corpus without the pipeline: its manifest, its packed layouts, its TF Examples.

Shared by `pipelines` (the build writes what this declares; `pipelines.consumers` adapt it to
tf.data, seqio and Hugging Face) and `trainer` (which imports nothing from `pipelines`). Importing
it loads neither Beam, Jinja nor SentencePiece; Beam's FileSystems is imported only to open a
gs:// or s3:// path.
"""
