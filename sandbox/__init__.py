"""Local stand-ins for Clio Manage API v4 and a Salesforce org. Never imported by DAG code."""
