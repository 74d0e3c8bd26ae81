"""Ray Serve, the deployment target: the application `resnet-deploy ray` writes (`writer`:
`write_ray_app`, `RayOptions`), its replica (`replica`, with the REST form's requests checked in
`rest`), and a cluster of `ray start` nodes on loopback addresses for development and tests
(`dev_cluster.LocalRayCluster`). Importing this package imports no Ray; the replica does."""

from .writer import RayOptions, write_ray_app

__all__ = ["RayOptions", "write_ray_app"]
