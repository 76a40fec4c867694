"""One module per ranker, all obeying ``visrec_pipelines.recsys.base.Ranker``."""
