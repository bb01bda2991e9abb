from sklearn.base import BaseEstimator, ClassifierMixin


class BrokenClassifier(ClassifierMixin, BaseEstimator):
    """Fails in fit, so the event always has one training_error to show."""

    def fit(self, X, y):
        raise ValueError("BrokenClassifier.fit: this submission is broken on purpose")

    def predict_proba(self, X):
        raise NotImplementedError


def get_estimator():
    return BrokenClassifier()
