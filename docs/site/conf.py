"""Sphinx settings of the series' site; docs/site/build.py executes the notebooks and runs Sphinx with them."""

project = "musicdiff"

extensions = ["myst_nb", "sphinx-mathjax-offline"]  # MathJax from the package: the pages fetch nothing
exclude_patterns = ["runs", "contents.md", "**.ipynb_checkpoints"]  # runs/: what the notebooks wrote

nb_execution_mode = "off"  # build.py has executed them, in order, in the source folder
nb_ipywidgets_js = {}  # widgets are drawn from their saved state by build.py, not by a widget manager from a CDN
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3
smartquotes = False  # text as the notebooks show it in Jupyter

html_theme = "sphinx_book_theme"
html_title = "musicdiff: music generation with a Diffusion Transformer"
html_static_path = ["_static"]
html_css_files = ["site.css"]
html_theme_options = {
    "repository_url": "https://github.com/musicdiff/musicdiff",
    "path_to_docs": "notebooks",
    "use_repository_button": True,
    "use_download_button": True,
    "show_toc_level": 2,
    "footer_content_items": [],
}
html_show_sourcelink = False
