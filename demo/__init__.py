"""The Gradio web demo (`python demo/app.py`): app.py lays out the page, service.py does the work, plots.py draws."""
