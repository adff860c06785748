"""Deployment: the Docker engine, local base images, the wheelhouse and the image builds
(containers); the compose and Swarm files themselves live in docker/.
"""
