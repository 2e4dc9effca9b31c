-- The live runs are few (calls in progress), and every query over them (live counts per
-- organisation and configuration, live and orphaned runs) reads them all through
-- runs_live_org. The second index over the same rows, by configuration, was never read, yet
-- every dialled run inserted into it and every ended run deleted from it.
DROP INDEX runs_live_config;
