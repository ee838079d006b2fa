CREATE DATABASE mlflow_optuna;
