"""Voxel grids: exact sparse 3D aggregation of process signals."""
