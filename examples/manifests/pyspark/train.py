"""Train and save the tiny logistic-regression model the pyspark example serves (into lr-model/)."""

from pyspark.ml.classification import LogisticRegression
from pyspark.ml.linalg import Vectors
from pyspark.sql import SparkSession

spark = (
    SparkSession.builder.appName("train")
    .master("local[1]")
    .config("spark.ui.enabled", "false")
    .config("spark.ui.showConsoleProgress", "false")
    .getOrCreate()
)
data = spark.createDataFrame(
    [(0.0, Vectors.dense([0.0, 1.1])), (1.0, Vectors.dense([2.0, 1.0])), (0.0, Vectors.dense([0.1, 1.2]))],
    ["label", "features"],
)
LogisticRegression(maxIter=10).fit(data).write().overwrite().save("lr-model")
spark.stop()
print("saved lr-model/")
