-- Databases beside the Airflow metadata DB ("airflow", the default database): the MLflow tracking
-- server and model registry, and the Feast SQL registry.
CREATE DATABASE mlflow OWNER airflow;
CREATE DATABASE feast OWNER airflow;
