from sklearn.dummy import DummyClassifier


def get_estimator():
    # predicts the training class frequencies for every sample: about 1/3 accuracy
    return DummyClassifier(strategy="stratified", random_state=0)
