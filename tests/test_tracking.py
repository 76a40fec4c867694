"""MLflow's local store opened by steps that run side by side (multiprocess executor, Celery workers)."""
import subprocess
import sys


def test_processes_opening_a_new_local_store_at_once_all_succeed(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    script = ("import sys; from visrec_pipelines.tracking import configure; "
              "m = configure(sys.argv[1], 'visrec-rankers-demo', sys.argv[2]); "
              "print(m.get_experiment_by_name('visrec-rankers-demo').experiment_id)")
    processes = [subprocess.Popen([sys.executable, "-c", script, uri, str(tmp_path)], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outcomes = [(p.wait(timeout=300), p.stdout.read().strip(), p.stderr.read()[-2000:]) for p in processes]
    assert all(code == 0 for code, _, _ in outcomes), [err for _, _, err in outcomes]
    assert len({experiment for _, experiment, _ in outcomes}) == 1          # one experiment, found by all
