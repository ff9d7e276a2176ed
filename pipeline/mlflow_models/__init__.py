"""MLflow pyfunc models (models from code): files MLflow copies into each logged model and runs on load.

Each file defines one ``PythonModel`` and hands it to ``mlflow.models.set_model``; no pickled
Python objects are stored, and the weights load with ``torch.load(weights_only=True)``.
They need ``fomm_core`` importable (the project installed) where the model is loaded.
"""
