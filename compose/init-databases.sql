-- Two databases on one server: the projections of the consumer groups, and the schema registry's
-- storage (so registered schemas survive restarts, unlike the in-memory local registry).
CREATE ROLE circulatory LOGIN PASSWORD 'circulatory';
CREATE DATABASE circulatory OWNER circulatory;
CREATE ROLE registry LOGIN PASSWORD 'registry';
CREATE DATABASE registry OWNER registry;
