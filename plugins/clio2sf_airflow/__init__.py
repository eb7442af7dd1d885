"""Airflow side of the Clio → Salesforce bundle: hooks, operators and phase task functions."""
