from rock.telemetry.gpu import GpuProcess, classify, nvml_processes


def test_known_trainers_and_engines_are_fine_anything_else_is_an_anomaly():
    processes = [GpuProcess(0, 100, 30_000, 95.0), GpuProcess(0, 200, 20_000, 60.0),
                 GpuProcess(1, 300, 2_000, 99.0), GpuProcess(1, 400, 0.0)]
    events = classify(processes, known_pids={100, 200})
    assert [(e.pid, e.category, e.severity) for e in events] == [(300, "compute.anomaly", "high")]
    assert "99% SM" in events[0].message


def test_gpu_use_from_a_sandbox_is_critical():
    events = classify([GpuProcess(0, 555, 512.0)], known_pids=set(), sandbox_of={555: "rock-abc"})
    assert events[0].severity == "critical" and events[0].sandbox == "rock-abc"


def test_no_nvml_means_none_not_an_error():
    result = nvml_processes()
    assert result is None or isinstance(result, list)
