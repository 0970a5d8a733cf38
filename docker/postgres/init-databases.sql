-- A second database on the same PostgreSQL for the MLflow tracking server and model registry
-- (the Airflow metadata DB is the default database "airflow").
CREATE DATABASE mlflow OWNER airflow;
