"""One module per page topic of the result tables that `readme_tables.py` renders into the README and the docs
site: a function per results file, results (a dict) in, a Markdown table out."""
