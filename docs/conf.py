"""Sphinx configuration of the documentation site: the notebooks, executed, with every figure.

Built by ``scripts/docs`` from a staging folder (build/docs-src) that holds this file, index.md,
the executed notebooks and the PNGs they show. Offline by design: myst-nb reads notebooks that
nbval already ran (no execution here), the theme is a pip package, and no extension fetches
anything (no intersphinx, no external images, no web fonts).

Why Sphinx + myst-nb: it is the engine Jupyter Book 1 wrapped, with the same theme, and it reads
executed notebooks as they are. Jupyter Book 2 (mystmd) fetches its site template from the web at
build time, which fails offline; MkDocs + mkdocs-jupyter builds offline too, but embeds each
notebook as nbconvert's HTML inside the page rather than as the theme's own content.
"""

project = "sam-widgets"
author = "the sam-widgets authors"
copyright = "the sam-widgets authors, Apache-2.0"

extensions = ["myst_nb"]
nb_execution_mode = "off"  # scripts/docs executes the notebooks (under nbval) before Sphinx runs
nb_merge_streams = True
myst_enable_extensions = ["colon_fence"]
exclude_patterns = ["_build", "**.ipynb_checkpoints"]
suppress_warnings = ["mystnb.unknown_mime_type"]  # live widgets: a static page shows their text form

html_theme = "sphinx_book_theme"
html_title = "sam-widgets: Segment Anything, clicked, seen and understood"
html_theme_options = {
    "show_toc_level": 2,
    "navigation_with_keys": False,
}
html_last_updated_fmt = None
