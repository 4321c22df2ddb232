"""Operating a stack: the demo, runbooks (papermill) and the headless run of every notebook."""
