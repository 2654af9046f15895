"""Docker backend: ``DockerContainerManager`` and its helpers (ports, containers, model images)."""
