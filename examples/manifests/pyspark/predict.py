"""Prediction function of the pyspark example: called with the SparkSession, the model and a batch."""


def predict(spark, model, inputs):
    from pyspark.ml.linalg import Vectors

    frame = spark.createDataFrame([(Vectors.dense(list(x)),) for x in inputs], ["features"])
    return [str(row.prediction) for row in model.transform(frame).collect()]
