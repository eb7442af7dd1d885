# Production image of the DAG bundle. The sandboxes are not part of it.
FROM apache/airflow:3.3.2-python3.11

ENV PYTHONPATH=/opt/airflow/project:/opt/airflow/plugins \
    AIRFLOW__CORE__LOAD_EXAMPLES=False

COPY --chown=airflow:root requirements.txt constraints.txt /opt/airflow/project/
RUN pip install --no-cache-dir -r /opt/airflow/project/requirements.txt -c /opt/airflow/project/constraints.txt

COPY --chown=airflow:root dags/ /opt/airflow/dags/
COPY --chown=airflow:root plugins/ /opt/airflow/plugins/
COPY --chown=airflow:root include/ /opt/airflow/project/include/
COPY --chown=airflow:root clio2sf/ /opt/airflow/project/clio2sf/

# The bundle's bytecode, written once here: each task is a new process that imports the modules its DAG
# file imports, and reads them compiled instead of compiling each from source (benchmarks.bench_dags does the
# same before it starts Airflow).
RUN python -m compileall -q /opt/airflow/dags /opt/airflow/plugins /opt/airflow/project/clio2sf
