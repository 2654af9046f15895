"""One live serving plane (management + query frontend + one model replica, SQLite store) shared by
the fuzz tests of this directory."""

from __future__ import annotations

import pytest

from tests.integration.cluster_fixtures import Cluster, make_model_dir


def total(xs):
    return [repr(float(sum(x))) for x in xs]


@pytest.fixture(scope="session")
def live(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    c = Cluster(root, f"sqlite:///{root}/config.db")
    try:
        c.start_mgmt()
        c.start_query_frontend("--max-body-bytes", "1000000")
        c.add_app("a", "doubles", 1_000_000)
        c.add_model("m", "1", "doubles")
        c.link("a", "m")
        c.start_container(make_model_dir(root, "m", total), "m", "1", "doubles")
        c.wait_serving("a", {"input": [1.0]})
        yield c
    except BaseException:
        print(c.log_tail())
        raise
    finally:
        c.close()
