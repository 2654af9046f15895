"""Prediction function of the pyspark example: called with the SparkSession, the model and a batch.

``model.predict`` on one vector runs in the driver (no Spark job), so a batch answers in
milliseconds. Pipelines and models without a per-row ``predict`` go through a DataFrame instead
(one small Spark job per batch, a few hundred milliseconds with ``local[1]``)::

    frame = spark.createDataFrame([(Vectors.dense(list(x)),) for x in inputs], ["features"])
    return [str(row.prediction) for row in model.transform(frame).select("prediction").collect()]
"""


def predict(spark, model, inputs):
    from pyspark.ml.linalg import Vectors

    return [str(model.predict(Vectors.dense([float(v) for v in x]))) for x in inputs]
