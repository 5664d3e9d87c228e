"""Search and agile modelling over `embed`'s window embeddings (issue 19): a cosine vector index of windows
(`index`), the embeddings files it reads (`table`), labelled windows for a linear head (`labels`) and the
queries and snippets of the `search` command (`query`). The head itself is `fewshot.linear_head`.

This layer sits above `inference` (a query embeds its example clip with a `Predictor`); nothing below imports it.
"""
