"""Widgets as a static page shows them: each widget output of an executed
notebook becomes HTML drawn from the widget state the run saved.

A page has no kernel, so a slider cannot redraw anything; the explorers of
``musicdiff_nb.viz.widgets`` already display their first view's figure as a
still before the controls. What is left to show: the controls' values (with
where to move them), the audio the first view plays, and a progress bar's
last state (tqdm's bar is a widget, so a page would otherwise show it at 0 %).
"""

from __future__ import annotations

import html

WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def widget_html(model_id: str, state: dict) -> str:
    """The HTML of the widget ``model_id`` and its children, from the saved ``state`` (model id -> model)."""
    model = state[model_id]
    name, values = model["model_name"], model["state"]
    if name in ("HBoxModel", "VBoxModel", "BoxModel"):
        ids = [child.removeprefix("IPY_MODEL_") for child in values["children"]]
        if ids and all(state[child]["model_name"].endswith("SliderModel") for child in ids):  # an explorer's
            return _controls_html([state[child]["state"] for child in ids])
        children = [widget_html(child, state) for child in ids]
        tag = "span" if name == "HBoxModel" else "div"
        return f'<{tag} class="widget-still">{" ".join(child for child in children if child)}</{tag}>'
    if name in ("HTMLModel", "LabelModel"):  # tqdm's text beside its bar; HTMLModel's value is HTML already
        return values.get("value", "") if name == "HTMLModel" else html.escape(values.get("value", ""))
    if name in ("FloatProgressModel", "IntProgressModel"):
        return f'<progress value="{values.get("value", 0)}" max="{values.get("max", 100)}"></progress>'
    if name.endswith("SliderModel"):
        return _controls_html([values])
    if name == "OutputModel":  # its figures are the still drawn above; its audio is not
        return "".join(output["data"]["text/html"] for output in values.get("outputs", ())
                       if "text/html" in output.get("data", {}))
    return ""


def _controls_html(sliders: list[dict]) -> str:
    """``t = 250 (0 to 999). Move the slider in JupyterLab or Colab to redraw the figure above.``"""
    values = "; ".join(_control_text(values) for values in sliders)
    which = "the slider" if len(sliders) == 1 else "the sliders"
    text = f"{values}. Move {which} in JupyterLab or Colab to redraw the figure above."
    return f'<span class="widget-control">{html.escape(text)}</span>'


def _control_text(values: dict) -> str:
    """A slider's name, value and range."""
    if "_options_labels" in values:  # a SelectionSlider
        labels = values["_options_labels"]
        value, low, high = labels[values.get("index", 0)], labels[0], labels[-1]
    else:
        value, low, high = values["value"], values["min"], values["max"]
    return f"{values.get('description', '')} = {value} ({low} to {high})"


def replace_widget_views(nb) -> int:
    """Turn every widget output of the executed notebook ``nb`` into an HTML
    output drawn from its saved state, drop the state (a page would load the
    widget manager from a CDN to show controls that do nothing), and return
    how many outputs were replaced."""
    state = nb.metadata.pop("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    replaced = 0
    for cell in nb.cells:
        for output in cell.get("outputs", ()):
            view = output.get("data", {}).get(WIDGET_VIEW)
            if view is None:
                continue
            if view["model_id"] not in state:
                raise ValueError(f"widget {view['model_id']} has no saved state: execute with store_widget_state")
            output["data"] = {"text/html": widget_html(view["model_id"], state)}
            replaced += 1
    return replaced
