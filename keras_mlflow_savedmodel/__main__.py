import sys

from keras_mlflow_savedmodel.cli import main

sys.exit(main())
