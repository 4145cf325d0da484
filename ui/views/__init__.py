"""What each tab's components show, from a feature's result (``zoo.features``): plain functions,
one module per feature, testable without starting gradio. The tabs (``ui/tabs``) only lay out
components and wire events to these and to the features."""
